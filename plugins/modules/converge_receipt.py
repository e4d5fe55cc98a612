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
  - C(state=recorded) (the end of C(site.yml)'s mesh part) writes a receipt into
    O(state_dir) - the module name and exact arguments of every mesh step that ran (from the
    registered results in O(results)), and a fingerprint of what those arguments are made
    from - the inventory sources, the collection's C(roles), C(plugins) and C(playbooks),
    the Ansible config file, the command line's extra vars, tags, skip-tags and limit,
    C(MESHFLEET_*) environment variables, the Ansible and Python versions and the built
    tools (size and modification time).
  - C(state=checked) (the start of C(site.yml)) loads the receipt. When the fingerprint is
    unchanged it runs every recorded step's own module code in check mode in this process,
    one forked process per host - the same drift checks a normal run makes - and returns
    C(converged=true) only when none of them would change anything. C(site.yml) then skips
    its mesh plays and sets the facts they would have set from the check results.
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
    description: The mesh state directory (the receipt is C(converge-receipt.json) in it, mode 0600).
    type: path
    required: true
  results:
    description:
      - With C(state=recorded), the registered results of the mesh steps, as a list of
        C(host), C(var) (the variable the result was registered as, set again from the check
        on a skipped run), C(module) (one of C(topology_validate), C(mesh_ca), C(cluster),
        C(istio_install), C(istiod_local), C(remote_secret)) and C(result).
      - Skipped results are left out.
    type: list
    elements: dict
    default: []
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
  - Anything not in the fingerprint that changes a step's arguments (a vars file outside the
    inventory and the collection, an environment variable other than C(MESHFLEET_*)) must be
    listed in O(inputs); or delete the receipt (or run with C(-e meshfleet_fast_noop=false)).
'''

EXAMPLES = r'''
- name: Is the mesh converged already?
  meshfleet.mesh.converge_receipt:
    state_dir: "{{ meshfleet_state_dir }}"
  register: gate

- name: Record what converged
  meshfleet.mesh.converge_receipt:
    state: recorded
    state_dir: "{{ meshfleet_state_dir }}"
    results:
      - host: cluster1
        var: clusters_result
        module: cluster
        result: "{{ hostvars['cluster1'].clusters_result }}"
'''

RETURN = r'''
converged:
  description: With C(state=checked), whether every recorded step would change nothing.
  returned: state=checked
  type: bool
reason:
  description: Why (no receipt, inputs changed, which host and step would change what, or how many steps were checked).
  returned: always
  type: str
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
