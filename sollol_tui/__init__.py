"""SOLLOL's terminal side: the `sollol` command line and the Textual dashboard."""
