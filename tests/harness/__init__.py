"""Test harness for nfsbridge: private smbd instances (and, later, NFS and local actors)."""
