"""The function app's HTTP and timer functions, thin adapters over :mod:`arr_core`."""
