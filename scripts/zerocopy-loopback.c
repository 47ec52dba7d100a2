// Measures MSG_ZEROCOPY over loopback TCP: sender and receiver CPU time per 128 KiB send from a
// 1 GiB transparent-huge-page buffer at random offsets (like a malloc namespace), with and without
// MSG_ZEROCOPY, and how many zerocopy completions say the kernel copied anyway
// (SO_EE_CODE_ZEROCOPY_COPIED). See docs/performance.md, "Large transfers".
//   gcc -O2 -pthread -o /tmp/zc scripts/zerocopy-loopback.c && /tmp/zc 0 40000 && /tmp/zc 1 40000
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/errqueue.h>
#include <unistd.h>
#include <errno.h>
#include <poll.h>
#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif
#define SZ (128*1024)
static int rfd;
static volatile int stop;
static double rxcpu; static long rxbytes; static double tcpu();
static void *rx(void *a){ char *b=malloc(1<<20); double r0=tcpu(); cpu_set_t c; CPU_ZERO(&c); CPU_SET(1,&c); pthread_setaffinity_np(pthread_self(),sizeof c,&c);
  while(!stop){ ssize_t n=recv(rfd,b,1<<20,0); if(n<=0) break; rxbytes+=n;} rxcpu=tcpu()-r0; return 0;}
static double tcpu(){ struct rusage u; getrusage(RUSAGE_THREAD,&u); return u.ru_utime.tv_sec+u.ru_stime.tv_sec+(u.ru_utime.tv_usec+u.ru_stime.tv_usec)/1e6; }
int main(int argc,char**argv){
  int zc=atoi(argv[1]); long iters=atol(argv[2]);
  cpu_set_t c; CPU_ZERO(&c); CPU_SET(0,&c); sched_setaffinity(0,sizeof c,&c);
  size_t len=1UL<<30; char *m=mmap(0,len,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  madvise(m,len,MADV_HUGEPAGE); memset(m,1,len);
  int l=socket(AF_INET,SOCK_STREAM,0); struct sockaddr_in a={.sin_family=AF_INET,.sin_addr.s_addr=htonl(0x7f000001)}; socklen_t al=sizeof a;
  bind(l,(void*)&a,sizeof a); listen(l,1); getsockname(l,(void*)&a,&al);
  int s=socket(AF_INET,SOCK_STREAM,0); connect(s,(void*)&a,sizeof a); rfd=accept(l,0,0);
  int one=1; setsockopt(s,IPPROTO_TCP,TCP_NODELAY,&one,sizeof one);
  if(zc && setsockopt(s,SOL_SOCKET,SO_ZEROCOPY,&one,sizeof one)) { perror("SO_ZEROCOPY"); return 1; }
  pthread_t t; pthread_create(&t,0,rx,0);
  long notif=0, copied=0; unsigned long x=88172645463325252UL;
  double t0=tcpu();
  for(long i=0;i<iters;i++){
    x^=x<<13; x^=x>>7; x^=x<<17; size_t off=(x%(len/SZ))*SZ;
    size_t done=0;
    while(done<SZ){ ssize_t n=send(s,m+off+done,SZ-done,zc?MSG_ZEROCOPY:0); if(n<0){ if(errno==ENOBUFS||errno==EAGAIN) continue; perror("send"); return 1;} done+=n; }
    if(zc){ // drain completions
      char cb[128]; struct msghdr mh={.msg_control=cb,.msg_controllen=sizeof cb};
      while(recvmsg(s,&mh,MSG_ERRQUEUE|MSG_DONTWAIT)>=0){ struct cmsghdr *cm=CMSG_FIRSTHDR(&mh);
        if(cm){ struct sock_extended_err *e=(void*)CMSG_DATA(cm); notif++; if(e->ee_code & SO_EE_CODE_ZEROCOPY_COPIED) copied++; }
        mh.msg_controllen=sizeof cb; }
    }
  }
  double t1=tcpu(); stop=1; shutdown(s,SHUT_RDWR); pthread_join(t,0);
  printf("zerocopy=%d sender cpu per 128K send: %.2f us; receiver (polling recv) cpu per 128K %.2f us; notifications %ld, of which 'copied' %ld\n",zc,(t1-t0)/iters*1e6,rxcpu/(rxbytes/(double)SZ)*1e6,notif,copied);
  return 0;
}
