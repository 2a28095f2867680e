// The one base of every error that bad user input causes (a size, a guest, a machine config, a PCI
// address, a socket path...): the CLI exits 2 for these and 1 for anything else.

export class UserInputError extends Error {}
