"""The dashboard's widgets; each renders one part of a ClusterSnapshot."""
