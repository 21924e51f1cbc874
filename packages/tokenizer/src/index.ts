export { BYTE_TO_UNICODE, bytesToToken, tokenToBytes } from "./bytes.js";
export {
  applyChatTemplate,
  bannedIds,
  CHAT_TOKENS,
  type ChatMessage,
  type ChatRole,
  type ChatSpan,
  FORGE_CHAT_TEMPLATE,
  type RenderChatOptions,
  type RenderedChat,
  renderChat,
  THOUGHT_TOKENS,
} from "./chat.js";
export { TokenizerError, type TokenizerErrorCode } from "./errors.js";
export {
  fromTokenizerJson,
  fromVocabJson,
  parseMergesTxt,
  toJavaScriptRegex,
  toTokenizerJson,
} from "./hf.js";
export { loadTokenizer, saveTokenizer } from "./io.js";
export {
  GPT2_DIGITS_PATTERN,
  GPT2_PATTERN,
  GPT4_PATTERN,
  type PatternName,
  pretokenize,
} from "./pretokenize.js";
export { type FromRanksOptions, fromTiktokenRanks, type RankEntry } from "./tiktoken.js";
export {
  type EncodeOptions,
  type NormalForm,
  type SpecialTokenPolicy,
  Tokenizer,
  type TokenizerSpec,
} from "./tokenizer.js";
export { type TrainOptions, type TrainProgress, train } from "./train.js";
