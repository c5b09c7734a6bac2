"""scan_bridge: Arrow scan files (external scanners, archives) onto latest_eigen_scan."""
