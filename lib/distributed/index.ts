/**
 * adamp's distributed layer (docs/distributed.md): sharded optimizer state and data-parallel
 * steps over a pluggable collective (MPI through the addon, NCCL on GPUs by design, in-process
 * for worker threads), bit-identical to the single-process step.
 */
export { CollectiveError, SoloCollective } from './collective';
export type {
  Collective, CollectiveBuffer, CollectiveMemory, DeviceBuffer, HostBuffer, ReduceOp, AllReduceOptions, CallSite,
} from './collective';
export { InProcessGroup, InProcessCollective } from './in-process';
export type { InProcessHandle } from './in-process';
export { partition, piecesOf, ownedCounts } from './partition';
export type { Partitioning, PartitionPlan, Piece, TensorPlacement } from './partition';
export { ShardedOptimizer, shard } from './sharded';
export type { ShardedConfig } from './sharded';
export { mpiAvailable, mpiCollective, launchedByMpi, MpiCollective } from './mpi';
export type { MpiOptions, MpiReport } from './mpi';
export { averageGradients, reduceScatterGradients, rankOrderMean, broadcastParams, agree } from './data-parallel';
export type { AverageGradientsOptions } from './data-parallel';
export { saveShardedCheckpoint, loadShardedCheckpoint, mergeShardedCheckpoint, serializeShard, SHARD_FORMAT, MANIFEST_FORMAT } from './checkpoint';
export type { SaveShardedOptions, LoadShardedOptions, ShardManifest } from './checkpoint';
export { ncclAvailable, ncclCollective } from './nccl';
export type { NcclOptions } from './nccl';
