import type { Command } from 'commander';
export function registerProbeCommand(_program: Command): void {}
