// The Supervisor module.
