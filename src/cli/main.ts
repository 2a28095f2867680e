export function main(argv: string[]): void { console.log(argv.length); }
