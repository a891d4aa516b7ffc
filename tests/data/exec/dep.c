/* A dependency of runpath_main that is found only through its DT_RUNPATH. */
int dep_value(void) { return 7; }
