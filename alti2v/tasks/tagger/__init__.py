"""The Illustration2Vec tagger: the task (task.py), tag categories (categories.py), predict's lines
(lines.py) and caption files beside images (captions.py)."""
from alti2v.tasks.tagger import captions
from alti2v.tasks.tagger.categories import (CATEGORIES, categories_text, parse_categories_csv,
                                            read_categories, vocabulary_categories)
from alti2v.tasks.tagger.lines import (PREDICT_SERVES, TagRules, line_tags,
                                       merge_category_thresholds, parse_category_thresholds,
                                       require_tagger, select_tags, tag_line, tag_lines,
                                       tag_rules)
from alti2v.tasks.tagger.task import (BAD_TAG_ENCODING, NO_TAG_FILE, REJECTION_REASONS, SAFEBOORU,
                                      TAGGER, TAGS, TaggerTask, tagged_features,
                                      sample_categories, train_frequencies, write_corpus,
                                      write_tag_categories)
