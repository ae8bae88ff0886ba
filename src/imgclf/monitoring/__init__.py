"""Monitoring: cheap input statistics, the reference profile stored with each export, drift tests
between a window of production predictions and that reference, and quality estimates without labels."""
