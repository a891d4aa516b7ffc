/* Built without -fPIC (-mcmodel=large -z notext): its text carries
 * relocations (DT_TEXTREL), which the loader applies by making the text
 * writable for a while. Such an object is never sealed. */
int textrel_value = 5;
int textrel_get(void) { return textrel_value; }
