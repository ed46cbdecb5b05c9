/**
 * The error every vQPU API call throws, in a module of its own so that the
 * panel model (and its unit tests) can use it without loading JupyterLab's
 * services.
 */

/**
 * An error from the vQPU API. `message` and `hint` come from the server's
 * `{"error", "message", "hint"}` body when there is one.
 */
export class VqpuApiError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
    readonly code: string | null = null,
    readonly hint: string | null = null
  ) {
    super(message);
    this.name = 'VqpuApiError';
  }

  /** `err` itself if it is a VqpuApiError, else one carrying its message. */
  static from(err: unknown): VqpuApiError {
    if (err instanceof VqpuApiError) {
      return err;
    }
    return new VqpuApiError(String((err as Error)?.message ?? err), null);
  }
}
