"""The commands: what each `notalone` command prints, which runner it uses (plain steps, or
Prefect flows with `--prefect`), the workspace it activates and the locks it holds."""
