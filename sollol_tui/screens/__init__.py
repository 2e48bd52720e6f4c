"""Modal screens of the dashboard: dialogs that ask the operator something and return the answer."""
