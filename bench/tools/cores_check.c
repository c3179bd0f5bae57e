// Is each vCPU its own physical core? The throughput of a divider-bound, a square-root-bound and
// an FMA-bound AVX2 loop on one thread alone, then on two threads pinned to CPUs 0 and 1 at once.
// Two hyperthreads of one core share its divider: their time per iteration would double.
//   gcc -O2 -mavx2 -mfma -pthread -o /tmp/cores_check bench/tools/cores_check.c && /tmp/cores_check
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static int kind; static long iters=200000000/8;
static volatile float sink;
static void* work(void* arg){
  int cpu=(int)(long)arg; cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu,&s); pthread_setaffinity_np(pthread_self(),sizeof s,&s);
  __m256 a0=_mm256_set1_ps(1.0001f),a1=_mm256_set1_ps(1.0002f),a2=_mm256_set1_ps(1.0003f),a3=_mm256_set1_ps(1.0004f);
  __m256 a4=_mm256_set1_ps(1.0005f),a5=_mm256_set1_ps(1.0006f),a6=_mm256_set1_ps(1.0007f),a7=_mm256_set1_ps(1.0008f);
  const __m256 d=_mm256_set1_ps(0.99999f), c=_mm256_set1_ps(1e-7f);
  double t0=now();
  for(long i=0;i<iters;++i){
    if(kind==0){a0=_mm256_div_ps(a0,d);a1=_mm256_div_ps(a1,d);a2=_mm256_div_ps(a2,d);a3=_mm256_div_ps(a3,d);}
    else if(kind==1){a0=_mm256_sqrt_ps(a0);a1=_mm256_sqrt_ps(a1);a2=_mm256_sqrt_ps(a2);a3=_mm256_sqrt_ps(a3);}
    else {a0=_mm256_fmadd_ps(a0,d,c);a1=_mm256_fmadd_ps(a1,d,c);a2=_mm256_fmadd_ps(a2,d,c);a3=_mm256_fmadd_ps(a3,d,c);
          a4=_mm256_fmadd_ps(a4,d,c);a5=_mm256_fmadd_ps(a5,d,c);a6=_mm256_fmadd_ps(a6,d,c);a7=_mm256_fmadd_ps(a7,d,c);}
  }
  double t=now()-t0;
  __m256 s2=_mm256_add_ps(_mm256_add_ps(a0,a1),_mm256_add_ps(a2,a3)); s2=_mm256_add_ps(s2,_mm256_add_ps(_mm256_add_ps(a4,a5),_mm256_add_ps(a6,a7)));
  float o[8]; _mm256_storeu_ps(o,s2); sink=o[0];
  double* r=malloc(sizeof(double)); *r=t; return r;
}
int main(void){
  const char* names[]={"vdivps","vsqrtps","vfmadd"};
  for(kind=0;kind<3;++kind){
    for(int n=1;n<=2;++n){
      pthread_t th[2]; for(int i=0;i<n;++i) pthread_create(&th[i],0,work,(void*)(long)i);
      for(int i=0;i<n;++i){double*r; pthread_join(th[i],(void**)&r); printf("%s threads=%d cpu%d: %.3f s (%.2f ns/iter)\n",names[kind],n,i,*r,*r/iters*1e9); free(r);}
    }
  }
}
