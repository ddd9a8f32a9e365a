/**
 * Sets `key` in `map`, which holds at most `max` keys: a new key at the bound first forgets the key set longest ago
 * (a Map iterates in insertion order). A bound on memory, not a cache policy: whoever uses the map reads or tells
 * again what it forgot.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  if (map.size >= max && !map.has(key)) {
    const oldest = map.keys().next();
    if (oldest.done !== true) map.delete(oldest.value);
  }
  map.set(key, value);
}
