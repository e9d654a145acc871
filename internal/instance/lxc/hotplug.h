#ifndef MOAT_HOTPLUG_H
#define MOAT_HOTPLUG_H

// argv[1] of the helper that hotplug.c's constructor runs.
#define MOAT_HOTPLUG_ARG "moat-hotplug"

int moat_hotplug_main(int argc, char **argv);

#endif
