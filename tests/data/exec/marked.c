/* A library carrying the GNU_PROPERTY_MEMORY_SEAL marker (with marker.S). */
int marked_value(void) { return 3; }
