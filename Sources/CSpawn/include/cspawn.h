#ifndef CSPAWN_H
#define CSPAWN_H
#include <sys/types.h>
int cspawn_placeholder(void);
#endif
