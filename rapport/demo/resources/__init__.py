"""The demo resources (the same YAML files as examples/demo), shipped inside the package."""
