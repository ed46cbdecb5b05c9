/**
 * The task-state vocabulary, the one place the TypeScript side names it.
 *
 * It mirrors the Python enum `jupyter_vqpu.core.lifecycle.TaskState` (values
 * and order) and its FINAL_STATES / HELD_STATES sets; the Python test
 * tests/unit/test_state_vocabulary.py parses this file and fails when the two
 * disagree, so keep the shape: one `NAME: 'value',` per line, and the sets as
 * one `TaskState.NAME,` per line.
 */

/** Every task state, in lifecycle order (names as in the Python enum). */
export const TaskState = {
  QUEUED: 'queued',
  CLAIMED: 'claimed',
  SCHEDULED: 'scheduled',
  RUNNING: 'running',
  COMPLETED: 'completed',
  FAILED: 'failed',
  CANCELLED: 'cancelled'
} as const;

/** A known task state. */
export type TaskState = (typeof TaskState)[keyof typeof TaskState];

/** The states in lifecycle order. */
export const TASK_STATES: readonly TaskState[] = Object.values(TaskState);

/** States a task never leaves (nothing to cancel, nothing more to wait for). */
export const FINAL_STATES: ReadonlySet<string> = new Set<TaskState>([
  TaskState.COMPLETED,
  TaskState.FAILED,
  TaskState.CANCELLED
]);

/** States in which an agent holds the task under a lease. */
export const HELD_STATES: ReadonlySet<string> = new Set<TaskState>([
  TaskState.CLAIMED,
  TaskState.SCHEDULED,
  TaskState.RUNNING
]);

/** Whether `state` (as the server sent it) is final. */
export function isFinalState(state: string | null | undefined): boolean {
  return typeof state === 'string' && FINAL_STATES.has(state);
}
