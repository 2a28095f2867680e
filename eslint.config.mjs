// ESLint flat config: typescript-eslint with type information (the rules below need the type checker
// to tell a Promise from any other value). `npm run lint` runs it with prettier --check and shellcheck.
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'build/', 'node_modules/', '.cache/', 'coverage/'] },
  {
    files: ['src/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts', 'scripts/*.js', 'bin/*.js'],
    languageOptions: {
      parser: tseslint.parser,
      // tsconfig.eslint.json: the build's tsconfig plus the plain-JS scripts (allowJs, no emit).
      parserOptions: { project: './tsconfig.eslint.json', tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      // A promise nobody awaits loses its rejection (an unhandled rejection ends Node) and its order.
      // node:test's test()/describe() return promises the runner itself tracks; everything else counts.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      // Errors are typed classes with their messages (the project's style): throw and reject with them.
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/prefer-promise-reject-errors': 'error',
      // A parameter a handler must accept but does not use is named _like_this.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // An import used only for types says so (`import type`, `{ type X }`): TypeScript drops it from the
      // emitted JS, so a reader sees at a glance which imports load a module at run time.
      // `require('./x') as typeof import('./x')` stays allowed: the CLI loads modules lazily that way so a
      // plain `run` starts without them (issue 10 item 4).
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports', disallowTypeAnnotations: false }],
    },
  },
  {
    // CommonJS scripts: require() is how they import, and type imports do not exist in JS.
    files: ['scripts/*.js', 'bin/*.js'],
    rules: { '@typescript-eslint/consistent-type-imports': 'off' },
  },
);
