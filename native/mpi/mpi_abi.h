// MPI loaded at run time (dlopen), so that the addon builds and loads without MPI and uses the one
// the job runs with (docs/distributed.md, "MPI"). The two ABIs in use are known:
//
//   Open MPI (3.x to 5.x, libmpi.so.40): handles are pointers to predefined globals
//     (MPI_COMM_WORLD is &ompi_mpi_comm_world, MPI_DOUBLE &ompi_mpi_double, ...), found with dlsym;
//     MPI_IN_PLACE (void*)1, MPI_STATUS_IGNORE NULL, MPI_ANY_SOURCE -1, MPI_SOURCE the first int of
//     a status.
//   MPICH (3.1 and later, libmpi.so.12 or libmpich.so.12, and its derivatives: Intel MPI, MVAPICH2, Cray MPICH):
//     handles are ints with fixed values (MPI_COMM_WORLD 0x44000000, MPI_DOUBLE 0x4c00080b, ...);
//     MPI_IN_PLACE (void*)-1, MPI_STATUS_IGNORE (void*)1, MPI_ANY_SOURCE -2, MPI_SOURCE the third int.
//
// `Api<Handles>` holds the functions with the right handle types for one ABI, so every call is
// made through a correctly typed pointer. Only the calls this package needs are bound.
#ifndef ADAMP_MPI_ABI_H
#define ADAMP_MPI_ABI_H

#include <stdint.h>

namespace adamp {
namespace mpi {

/** Open MPI's handle types: pointers to opaque structs. */
struct OmpiHandles {
  using Comm = void*;
  using Datatype = void*;
  using Op = void*;
  using Request = void*;
  using Errhandler = void*;
};

/** MPICH's handle types: ints. */
struct MpichHandles {
  using Comm = int;
  using Datatype = int;
  using Op = int;
  using Request = int;
  using Errhandler = int;
};

template <class H>
struct Api {
  using Comm = typename H::Comm;
  using Datatype = typename H::Datatype;
  using Op = typename H::Op;
  using Request = typename H::Request;
  using Errhandler = typename H::Errhandler;

  int (*Initialized)(int*) = nullptr;
  int (*Finalized)(int*) = nullptr;
  int (*Init_thread)(int*, char***, int, int*) = nullptr;
  int (*Finalize)() = nullptr;
  int (*Abort)(Comm, int) = nullptr;
  int (*Comm_rank)(Comm, int*) = nullptr;
  int (*Comm_size)(Comm, int*) = nullptr;
  int (*Comm_dup)(Comm, Comm*) = nullptr;
  int (*Comm_set_errhandler)(Comm, Errhandler) = nullptr;
  int (*Iallgatherv)(const void*, int, Datatype, void*, const int*, const int*, Datatype, Comm, Request*) = nullptr;
  int (*Iallreduce)(const void*, void*, int, Datatype, Op, Comm, Request*) = nullptr;
  int (*Ialltoallv)(const void*, const int*, const int*, Datatype, void*, const int*, const int*, Datatype, Comm, Request*) = nullptr;
  int (*Ireduce_scatter)(const void*, void*, const int*, Datatype, Op, Comm, Request*) = nullptr;
  int (*Isend)(const void*, int, Datatype, int, int, Comm, Request*) = nullptr;
  int (*Irecv)(void*, int, Datatype, int, int, Comm, Request*) = nullptr;
  int (*Recv)(void*, int, Datatype, int, int, Comm, void*) = nullptr;
  int (*Test)(Request*, int*, void*) = nullptr;
  int (*Iprobe)(int, int, Comm, int*, void*) = nullptr;
  int (*Request_free)(Request*) = nullptr;
  int (*Error_string)(int, char*, int*) = nullptr;

  // Predefined handles and constants of this ABI.
  Comm world{};
  Datatype f32{}, f64{}, i64{};
  Op sum{}, max{}, min{};
  Errhandler errors_return{};
  void* in_place = nullptr;
  void* status_ignore = nullptr;
  int any_source = 0;
  /** Index of MPI_SOURCE among the ints of a status. */
  int status_source = 0;
};

// MPICH's fixed handle values (mpi.h of MPICH 3.1-4.x; the same in its derivatives).
constexpr int kMpichCommWorld = 0x44000000;
constexpr int kMpichFloat = 0x4c00040a;
constexpr int kMpichDouble = 0x4c00080b;
constexpr int kMpichLongLong = 0x4c000809;
constexpr int kMpichMax = 0x58000001;
constexpr int kMpichMin = 0x58000002;
constexpr int kMpichSum = 0x58000003;
constexpr int kMpichErrorsReturn = 0x54000001;

constexpr int kThreadFunneled = 1;  // MPI_THREAD_FUNNELED: the same in both ABIs

}  // namespace mpi
}  // namespace adamp

#endif  // ADAMP_MPI_ABI_H
