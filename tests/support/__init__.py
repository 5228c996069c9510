"""What tests share: data made here, projects and pipeline runs, processes, servers, waits."""
