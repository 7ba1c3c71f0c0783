"""Round-robin TCP and HTTP proxying to backends that follow a catalog view."""
