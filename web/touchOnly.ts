/**
 * The media query of devices whose only pointer is a finger: a phone, a tablet with no mouse or trackpad. A module of
 * its own, with no code that needs a page, so that the browser tests ask a page the same question.
 */
export const TOUCH_ONLY = '(hover: none) and (pointer: coarse)';
