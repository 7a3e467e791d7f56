"""The command-line entry points (``prefopt-train``, ``prefopt-export``, ``prefopt-report``) and
the checks they run first. Nothing below this room imports it."""
