#include "vgw_meter.h"
int vgw_meter_version(void) { return 0; }
