// The Protocol module.
