#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: converge_receipt
short_description: Check a converged mesh in one process, or record what converged
description:
  - C(state=recorded) (the end of C(playbooks/mesh.yml)) writes a receipt into
    O(state_dir) - the module class and arguments of every mesh step that ran (every registered
    result of this run that carries C(receipt_step), on every host, or those in O(results)),
    and a fingerprint of what those arguments are made
    from - the inventory sources, the collection's C(roles), C(plugins) and C(playbooks),
    the Ansible config file, the command line's extra vars and limit,
    C(MESHFLEET_*) environment variables, the Ansible and Python versions and the built
    tools (size and modification time).
  - C(state=checked) (the gate at the start of C(playbooks/mesh.yml)) loads the receipt. When the fingerprint is
    unchanged it asks every recorded step's own module code one question in this process,
    one forked process per host - is its plan empty and is it healthy? (the same observation
    and plan a normal run makes) - and returns C(converged=true) only when every answer is yes.
    The gate then leaves every cluster out of the group its mesh plays target, and the summary
    (M(meshfleet.mesh.mesh_summary)) reads the check results.
  - The receipt is for whole converges. A run whose C(--tags)/C(--skip-tags) leave out one of
    the mesh steps (the plays tagged C(trust), C(clusters), C(control_plane), C(mesh_links)), or
    that sets C(meshfleet_fast_noop=false), neither checks (C(converged=false), its C(reason) says
    why) nor records it; a receipt already there is kept. Other tags (C(vms), C(summary),
    molecule's C(notest)) do not matter.
  - Nothing is ever changed by C(checked). The receipt is bookkeeping, like a cache - writing
    it reports no change. It never holds secrets - a step with a C(no_log) argument or a
    censored result makes C(recorded) drop the receipt instead, and the next run takes the
    normal path.
  - C(state=absent) removes the receipt (C(teardown.yml) does).
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
options:
  state:
    description: What to do with the receipt.
    type: str
    choices: [checked, recorded, absent]
    default: checked
  state_dir:
    description:
      - The mesh state directory (the receipt is C(converge-receipt.json) in it, mode 0600).
      - Default - the inventory's C(meshfleet_state_dir) (the topology's C(mesh.state_dir)).
    type: path
  results:
    description:
      - With C(state=recorded), the registered results of the mesh steps, as a list of
        C(host), C(var) (the variable the result was registered as; the check's results are
        returned under it) and C(result) (carrying C(receipt_step) and C(module_args), as a
        module whose class is a receipt step returns them).
      - Default - every registered result of this run that carries C(receipt_step), on every
        host (and every result hidden by C(no_log), which makes recording refuse).
      - Skipped results are left out.
    type: list
    elements: dict
  inputs:
    description: More files or folders whose content the mesh depends on (vars files outside
      the inventory and the collection), added to the fingerprint.
    type: list
    elements: path
    default: []
attributes:
  action:
    description: Runs on the controller as an action plugin (it fingerprints the controller's view of the run).
    support: full
  check_mode:
    description: C(checked) is read-only anyway; C(recorded) and C(absent) write nothing in check mode.
    support: full
  diff_mode:
    description: No diff; it changes nothing in the mesh.
    support: none
notes:
  - Read from the task's variables - C(meshfleet_state_dir) (the default of O(state_dir)),
    C(meshfleet_fast_noop) (default C(true)), and the run's tags (C(ansible_run_tags),
    C(ansible_skip_tags)).
  - Anything not in the fingerprint that changes a step's arguments (a vars file outside the
    inventory and the collection, an environment variable other than C(MESHFLEET_*)) must be
    listed in O(inputs); or delete the receipt (or run with C(-e meshfleet_fast_noop=false)).
'''

EXAMPLES = r'''
- name: Is the mesh converged already?
  meshfleet.mesh.converge_receipt:
  register: meshfleet_gate

- name: Record what converged (every registered result of a receipt step, on every host)
  meshfleet.mesh.converge_receipt:
    state: recorded
  run_once: true

- name: Forget the receipt (the next run checks everything)
  meshfleet.mesh.converge_receipt:
    state: absent
    state_dir: /srv/mesh/.meshfleet
'''

RETURN = r'''
converged:
  description: With C(state=checked), whether every recorded step would change nothing.
  returned: state=checked
  type: bool
reason:
  description: Why (no receipt, inputs changed, which host and step would change what, how many
    steps were checked, or why this run neither checks nor records).
  returned: always
  type: str
selected:
  description: With C(state=checked), the mesh steps this run's tags select, in order.
  returned: state=checked
  type: list
  elements: str
  sample: [trust, clusters, control_plane, mesh_links]
results:
  description: With C(state=checked) and C(converged), host to registered variable name to the check-mode result of its step.
  returned: state=checked
  type: dict
recorded:
  description: With C(state=recorded), whether the receipt was written.
  returned: state=recorded
  type: bool
path:
  description: The receipt file.
  returned: always
  type: str
'''
