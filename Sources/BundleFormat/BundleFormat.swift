// Bundle archives and manifests.
