/* cli.h: the command line: subcommands (mount, the default, and mkfs),
 * option parsing, the password, and running as a daemon.
 *
 * Locking: runs on the main thread before and after the FUSE loop. */
#ifndef ZEROFS_CLI_H
#define ZEROFS_CLI_H

/* The program.  Returns the process exit status. */
int cli_main(int argc, char **argv);

#endif
