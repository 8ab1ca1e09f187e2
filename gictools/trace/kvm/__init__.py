"""Recording real KVM: record.sh (tracefs probes, run on the arm64 host) and its importer."""
