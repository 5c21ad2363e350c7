//! OCI bundles, delegate runtime state and checkpoint archives; arrives with the container issue.
