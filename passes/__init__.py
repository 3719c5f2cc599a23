"""modelc subpackage."""
