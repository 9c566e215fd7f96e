/* cfg-doc.c: prints the documentation generated from the option table, so
 * that the committed man page and sample config can be rebuilt from it
 * ("make update-docs"):
 *
 *   cfg-doc --help             the -o lines of zerofs-fuse --help
 *   cfg-doc --sample           etc/zerofs-fuse.conf
 *   cfg-doc --man [TEMPLATE]   the OPTIONS entries of zerofs-fuse(8), or
 *                              TEMPLATE with its @CFG_OPTIONS@ line replaced
 *                              by them
 *   cfg-doc --conf-man [TEMPLATE]
 *                              the same for the SETTINGS of zerofs-fuse.conf(5) */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cfg.h"

#define PLACEHOLDER "@CFG_OPTIONS@"

static int print_man(const char *template, void (*entries)(FILE *f))
{
	char line[4096];
	FILE *in;
	int found = 0;

	if (!template) {
		entries(stdout);
		return 0;
	}
	in = fopen(template, "r");
	if (!in) {
		perror(template);
		return 1;
	}
	while (fgets(line, sizeof(line), in)) {
		if (strcmp(line, PLACEHOLDER "\n") == 0) {
			entries(stdout);
			found = 1;
		} else {
			fputs(line, stdout);
		}
	}
	fclose(in);
	if (!found) {
		fprintf(stderr, "%s: no %s line\n", template, PLACEHOLDER);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--help") == 0)
		cfg_print_help(stdout);
	else if (argc == 2 && strcmp(argv[1], "--sample") == 0)
		cfg_print_sample(stdout);
	else if ((argc == 2 || argc == 3) && strcmp(argv[1], "--man") == 0)
		return print_man(argc == 3 ? argv[2] : NULL, cfg_print_man);
	else if ((argc == 2 || argc == 3) && strcmp(argv[1], "--conf-man") == 0)
		return print_man(argc == 3 ? argv[2] : NULL, cfg_print_conf_man);
	else {
		fprintf(stderr,
			"usage: %s --help | --sample | --man [TEMPLATE] | --conf-man [TEMPLATE]\n",
			argv[0]);
		return 2;
	}
	return fflush(stdout) == 0 ? 0 : 1;
}
