/* main.c: the zerofs-fuse executable; everything else is in libzerofs. */
#include "config.h"

#include "cli.h"

int main(int argc, char **argv)
{
	return cli_main(argc, argv);
}
