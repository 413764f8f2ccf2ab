"""Command families behind `pipelines.cli`: printing, runner choice, workspace activation."""
