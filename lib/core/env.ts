/**
 * Every environment variable the library reads at run time, read here and nowhere else (the
 * install-time switches are read by scripts/install.js; docs/configuration.md lists both).
 */

/** The run-time switches and what each does. */
export const ENV_SWITCHES = {
  ADAMP_ADDON_PATH: 'load this .node file as the native addon; nothing else is tried',
  ADAMP_JS_WASM: "'0': the js backend runs its TypeScript loops instead of its WebAssembly SIMD kernel (results are identical)",
  ADAMP_SIMD: "'portable': the native backend runs its portable kernels even where AVX2 is available (results are identical)",
  ADAMP_SPECULATE: "'1': native AdamP steps on 2 threads or more take the speculative single pass (off by default; results are identical)",
  ADAMP_DEBUG: 'any value: the command line prints stack traces with its errors',
  ADAMP_MPI_ADDON_PATH: 'load this .node file as the MPI addon (lib/distributed); nothing else is tried',
  ADAMP_MPI_LIBRARY: 'the MPI library the MPI collective loads (a path or a soname; default libmpi.so.40, then libmpi.so.12 and libmpich.so.12)',
  ADAMP_COLLECTIVE_TIMEOUT_MS: 'the default deadline of a collective call in milliseconds (default 600000)',
  ADAMP_QUIET: "any value but '0': no warning (ADAMP_NATIVE_UNAVAILABLE) when backend 'auto' runs on js because the native addon did not load",
} as const;

export type EnvSwitch = keyof typeof ENV_SWITCHES;

/** The switch's value, or undefined when it is unset or empty. */
export function readEnv(name: EnvSwitch): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

/**
 * Whether an MPI launcher started this process (lib/distributed): the variables mpirun/mpiexec
 * (Open MPI, MPICH's hydra, PMIx) and srun set for their ranks. Read, never set.
 */
export function startedByMpiLauncher(): boolean {
  return mpiLauncherKind() !== null;
}

/** Which launcher: Open MPI's mpirun ('open-mpi'), a PMI launcher (MPICH's hydra, Intel MPI, srun: 'pmi'), or none. */
export function mpiLauncherKind(): 'open-mpi' | 'pmi' | null {
  const e = process.env;
  if (e.OMPI_COMM_WORLD_SIZE !== undefined) return 'open-mpi';
  if (e.PMI_SIZE !== undefined || e.PMI_RANK !== undefined || e.PMIX_RANK !== undefined || e.MPI_LOCALNRANKS !== undefined) return 'pmi';
  return null;
}
