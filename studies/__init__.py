"""Study modules: each declares its parameters, expands them into cells, runs one cell.

Adding a study is one new module with NAME, OUTPUT, Config, PROFILES, cells and run_cell
(see toolkit.sweep), plus one line here.
"""

from studies import conditional_diffusion, rf_attention, spatiotemporal_dit

STUDIES = {
    module.NAME: module for module in (rf_attention, conditional_diffusion, spatiotemporal_dit)
}
