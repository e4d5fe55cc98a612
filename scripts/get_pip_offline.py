"""Stand-in for the pip bootstrap script ansible-test downloads from its CI file host.

That host is unreachable from our machines (only package registries are), so
scripts/sanity.sh puts this file where ansible-test caches the bootstrap
script. It does what get-pip.py does: install pip (from the interpreter's own
ensurepip wheel, then the requested version from PyPI) into this interpreter.
"""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"],
                      stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet"] + args)
