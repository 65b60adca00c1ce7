"""``python -m helloscope.sniffer``: the ``helloscope`` command."""

from helloscope.sniffer.run.cli import main

main()
