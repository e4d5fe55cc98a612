# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Local real-node clusters' networks: the address plan (``addressing``, pure) and the
machine-wide slot registry (``slots``) that hands out node, network and mesh numbers."""
