import type { Command } from 'commander';
export function registerRaceCommand(_program: Command): void {}
