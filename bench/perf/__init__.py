"""Performance tooling: the speed benchmark, the authors'-recipe baseline, the op profiler, the loss-fixture
check and the paired cost benchmark."""
