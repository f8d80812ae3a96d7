// What waits for delivery to one instance: bounded in count and size, so that a flood of `cco team message`
// can neither grow cco's memory nor bury a report. The role prompt (what tells an instance who it is) is never
// dropped; the oldest other messages give way to newer ones, replaced by one notice that counts them.

export interface OutboxLimits {
  /** Messages waiting, the drop notice included, the role prompt not counted. */
  readonly maxMessages: number
  /** Characters of the waiting messages, the role prompt not counted; a longer message is cut to this. */
  readonly maxChars: number
}

// Well under what one paste carries (Untrusted.PANE_MAX), so that a full outbox goes in as one prompt beside a role prompt.
export const OUTBOX_LIMITS: OutboxLimits = { maxMessages: 20, maxChars: 32 * 1024 }

const NOTICE = /^\[cco\] (\d+) older messages? to you (?:was|were) dropped\b/

const notice = (n: number, limits: OutboxLimits) =>
  `[cco] ${n} older message${n === 1 ? " to you was" : "s to you were"} dropped: too many were waiting (cco keeps the newest ${limits.maxMessages}).`

const chars = (texts: ReadonlyArray<string>) => texts.reduce((n, t) => n + t.length, 0)

export interface Enqueued {
  readonly outbox: ReadonlyArray<string>
  /** Messages dropped by this call (0: nothing trimmed). */
  readonly dropped: number
  readonly droppedChars: number
  /** Whether the new message itself was cut to maxChars. */
  readonly truncated: boolean
}

/**
 * Adds `text` to an outbox. A role prompt goes first; `roleFirst` says the outbox already starts with one
 * (queued, not yet delivered), which then stays untouched.
 */
export const enqueue = (
  outbox: ReadonlyArray<string>,
  text: string,
  options: { readonly role: boolean; readonly roleFirst: boolean },
  limits: OutboxLimits = OUTBOX_LIMITS
): Enqueued => {
  const keepFirst = options.role ? 0 : options.roleFirst && outbox.length > 0 ? 1 : 0
  const head = options.role ? [text] : outbox.slice(0, keepFirst)
  const cut = !options.role && text.length > limits.maxChars
  const added = cut ? `${text.slice(0, Math.max(0, limits.maxChars - 40))}\n… [cut by cco: message too long]` : text
  const rest = options.role ? [...outbox] : [...outbox.slice(keepFirst), added]
  // An earlier notice is folded into the new count.
  let earlier = 0
  if (rest.length > 0 && NOTICE.test(rest[0]!)) earlier = Number(NOTICE.exec(rest[0]!)![1])
  const messages = earlier > 0 ? rest.slice(1) : rest
  let dropped = 0
  let droppedChars = 0
  const over = () =>
    messages.length + (earlier + dropped > 0 ? 1 : 0) > limits.maxMessages || chars(messages) > limits.maxChars
  // The newest message always stays.
  while (messages.length > 1 && over()) {
    droppedChars += messages.shift()!.length
    dropped++
  }
  const total = earlier + dropped
  return {
    outbox: [...head, ...(total > 0 ? [notice(total, limits)] : []), ...messages],
    dropped,
    droppedChars,
    truncated: cut
  }
}

/** How texts in one delivery are joined. */
export const SEPARATOR = "\n\n"

/**
 * The messages that go in as one prompt: the oldest ones whose joined text fits `maxChars` (at least one), so a
 * full outbox never runs past what one paste carries and nothing at its end is cut; the rest wait for the next turn.
 */
export const nextBatch = (outbox: ReadonlyArray<string>, maxChars: number): readonly [ReadonlyArray<string>, ReadonlyArray<string>] => {
  let n = 1
  let size = outbox[0]?.length ?? 0
  while (n < outbox.length && size + SEPARATOR.length + outbox[n]!.length <= maxChars) {
    size += SEPARATOR.length + outbox[n]!.length
    n++
  }
  return [outbox.slice(0, n), outbox.slice(n)]
}
