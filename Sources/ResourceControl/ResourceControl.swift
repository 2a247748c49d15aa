// cgroups and rlimits.
