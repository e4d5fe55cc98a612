# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container images without a registry (issue #11 item 3).

- :mod:`.spec`: one plain-data :class:`~.spec.ImageSpec` per image (files and where they go,
  entrypoint, cmd, env, user, working dir, exposed ports, an optional base tree) and the pure
  logic of its input digest, tag and reference. No I/O beyond hashing the named inputs.
- :mod:`.catalog`: the mesh's images (pause, proxyv2, pilot, helloworld, curl) as specs.
- :mod:`.builder`: :func:`~.builder.build` makes an OCI archive of a spec with umoci and skopeo
  into a content-addressed cache (built under a lock in a temp dir, renamed into place).
- :mod:`.containerd`: :func:`~.containerd.import_images` imports archives into a containerd
  (``ctr images import``), skipping what it already has with the same manifest digest.

Nothing here imports anything beyond the standard library at module load.
"""
