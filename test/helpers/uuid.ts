/** A UUID of version 7 (time-ordered), lower-case. */
export const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** A UUID of version 4 (random), lower-case. */
export const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The Unix milliseconds in a version-7 UUID's first 48 bits. */
export const millisOfV7 = (id: string): number => parseInt(id.replaceAll('-', '').slice(0, 12), 16);
