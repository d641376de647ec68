"""The machinery behind ``make reproduce``: notebook parameters, the papermill runner, output
manifests, portable (machine-path-free) reports and atomic file writes. It knows nothing of the
study or the core."""
