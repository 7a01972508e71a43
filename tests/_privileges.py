"""Run a child without the privilege to ignore file permissions.

Tests of read-only directories mean nothing as root, who writes anywhere; there the
child runs under ``setpriv`` without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH."""
import os
import shutil

_DAC = "-dac_override,-dac_read_search"


def unprivileged(argv):
    """`argv` prefixed so that file permissions bind it, or None when that is impossible."""
    if os.geteuid() != 0:
        return list(argv)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, f"--bounding-set={_DAC}", f"--inh-caps={_DAC}", *argv]


def read_only_dir(path):
    """Create `path` as a directory nobody (but a privileged user) may write into."""
    path.mkdir()
    path.chmod(0o555)
    return path
