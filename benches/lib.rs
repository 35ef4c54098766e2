//! tollgate's benchmarks (not published): criterion benches, each measuring tollgate beside its
//! peers in the same run, and the gateway's bench script. `benches/README.md` has the figures and
//! the command for each (`cargo bench -p tollgate-benches --bench <name>`).
